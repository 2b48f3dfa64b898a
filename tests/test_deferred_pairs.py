"""IJB-B/C with the pair file read in a thread while the store is pooled (``defer_pairs``):
the same report and per-pair file as a protocol loaded whole, and a bad pair file still
fails loudly, naming its line, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import fill_disk_at
from ijbc_fixtures import write_ijbc

from facebench.cli import cli
from facebench.errors import InputFormatError
from facebench.evaluate import load_protocol
from facebench.evaluate_splits import STAGES, SplitOptions, evaluate_templates
from facebench.store import create_store, normalize_rows
from protocols import DeferredTemplateProtocol, TemplateProtocol
from protocols.ijbc import load_ijb


@pytest.fixture(scope="module", params=[("ijbc", True), ("ijbb", False)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    variant, with_1n = request.param
    root = tmp_path_factory.mktemp(variant) / variant.upper()
    record = write_ijbc(
        root,
        variant=variant,
        n_subjects=10,
        templates_per_subject=3,
        images_per_template=3,
        seed=4,
        with_1n=with_1n,
        impostors_per_probe=6,
    )
    keys = sorted(record["scores"])
    unit, norms = normalize_rows(np.random.default_rng(2).standard_normal((len(keys), 12)))
    store = root.parent / "s.h5"
    create_store(store, keys, unit, norms, model="m")
    return {"root": root, "store": store, "variant": variant, "record": record}


def report_of(world: dict[str, Any], protocol: Any) -> tuple[dict, dict]:
    stages: list[str] = []
    report, data = evaluate_templates(
        protocol, world["store"], SplitOptions(pooling="media"), timer=stages.append
    )
    payload = report.to_dict()
    payload.pop("created")
    return payload, {"data": data, "stages": stages}


def verify_args(world: dict[str, Any], out: Path) -> list[str]:
    return [
        "verify",
        "--protocol",
        world["variant"],
        "--protocol-dir",
        str(world["root"]),
        "--features",
        str(world["store"]),
        "--json",
        str(out),
    ]


def test_deferred_pairs_give_the_same_report(world: dict[str, Any]) -> None:
    whole = load_ijb(world["root"], world["variant"], detector_scores=False)
    deferred = load_ijb(world["root"], world["variant"], detector_scores=False, defer_pairs=True)
    assert isinstance(whole, TemplateProtocol)
    assert isinstance(deferred, DeferredTemplateProtocol)
    assert deferred.view.splits[0].verification.left.size == 0  # no pair in the view
    expected, found = report_of(world, whole)
    got, found_deferred = report_of(world, deferred)
    assert got == expected
    assert found_deferred["data"].keys() == found["data"].keys()
    for key, value in found["data"].items():
        np.testing.assert_array_equal(found_deferred["data"][key], value)
    assert "pairs" in found_deferred["stages"] and "pairs" not in found["stages"]
    assert set(found_deferred["stages"]) <= set(STAGES)
    # the whole protocol is made once, and is what loading it whole gives
    result = deferred.result()
    assert result is deferred.result()
    assert result.sha256 == whole.sha256 and result.counts == whole.counts
    assert result.warnings == whole.warnings
    np.testing.assert_array_equal(
        result.splits[0].verification.left, whole.splits[0].verification.left
    )


def test_load_protocol_defers_only_when_asked(world: dict[str, Any]) -> None:
    name = world["variant"]
    plain = load_protocol(name, protocol_dir=world["root"])
    deferred = load_protocol(name, protocol_dir=world["root"], defer_pairs=True)
    assert isinstance(plain, TemplateProtocol)
    assert isinstance(deferred, DeferredTemplateProtocol)


def broken_copy(world: dict[str, Any], tmp_path: Path) -> Path:
    """The protocol folder with a bad label on the pair file's third line."""
    import shutil

    root = tmp_path / world["root"].name
    shutil.copytree(world["root"], root)
    pairs = root / world["record"]["files"]["pairs"]
    lines = pairs.read_text(encoding="utf-8").splitlines(keepends=True)
    first, second, _ = lines[2].split(" ")
    lines[2] = f"{first} {second} 7\n"
    pairs.write_text("".join(lines), encoding="utf-8")
    return root


def test_a_bad_pair_file_fails_when_its_pairs_are_needed(
    world: dict[str, Any], tmp_path: Path
) -> None:
    root = broken_copy(world, tmp_path)
    with pytest.raises(InputFormatError, match=r":3: Expected the label 1 \(genuine\) or 0"):
        load_ijb(root, world["variant"], detector_scores=False)
    deferred = load_ijb(root, world["variant"], detector_scores=False, defer_pairs=True)
    with pytest.raises(InputFormatError, match=r":3: Expected the label 1 \(genuine\) or 0"):
        evaluate_templates(deferred, world["store"], SplitOptions(pooling="media"))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, verify_args({**world, "root": root}, out))
    assert result.exit_code != 0
    assert ":3: Expected the label 1 (genuine) or 0 (impostor), but got 7" in result.output
    assert not out.exists() and not list(tmp_path.glob("r.*"))


def test_the_cli_report_equals_the_whole_protocol_report(
    world: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, verify_args(world, out))
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text(encoding="utf-8"))
    payload.pop("created")
    whole = load_ijb(world["root"], world["variant"], detector_scores=False)
    expected, _ = report_of(world, whole)
    assert json.loads(json.dumps(expected)) == payload


def test_the_protocol_error_comes_before_a_store_error(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """A bad pair file and a store built for another protocol: the protocol's error is the
    one reported (fix the protocol first), as when the protocol is loaded whole."""
    root = broken_copy(world, tmp_path)
    other = tmp_path / "other.h5"
    unit, norms = normalize_rows(np.random.default_rng(0).standard_normal((3, 12)))
    create_store(other, ["a", "b", "c"], unit, norms, model="m")
    deferred = load_ijb(root, world["variant"], detector_scores=False, defer_pairs=True)
    with pytest.raises(InputFormatError, match=r":3: Expected the label 1 \(genuine\) or 0"):
        evaluate_templates(deferred, other, SplitOptions(pooling="media"))


def test_a_store_opened_while_the_protocol_is_parsed_gives_the_same_report(
    world: dict[str, Any],
) -> None:
    from facebench.store import StoreOpening

    whole = load_ijb(world["root"], world["variant"], detector_scores=False)
    expected, found = report_of(world, whole)
    with StoreOpening(world["store"]) as opening:
        deferred = load_ijb(
            world["root"], world["variant"], detector_scores=False, defer_pairs=True
        )
        got, found_opened = report_of({**world, "store": opening}, deferred)
    assert got == expected
    for key, value in found["data"].items():
        np.testing.assert_array_equal(found_opened["data"][key], value)


@pytest.mark.parametrize("store_kind", ["another protocol's", "not HDF5"])
def test_the_cli_reports_the_protocol_error_before_the_store_error(
    world: dict[str, Any], tmp_path: Path, store_kind: str
) -> None:
    """verify opens the store in a thread while it parses the protocol: with both broken,
    the protocol's error is the one reported, as before; with the protocol sound, the
    store's error names the store."""
    store = tmp_path / "bad.h5"
    if store_kind == "not HDF5":
        store.write_text("plain text\n", encoding="utf-8")
        phrase = "the file is not HDF5"
    else:
        unit, norms = normalize_rows(np.random.default_rng(0).standard_normal((3, 12)))
        create_store(store, ["a", "b", "c"], unit, norms, model="m")
        phrase = "Expected every requested id in the store"
    out = tmp_path / "r.json"
    for root, expected in [
        (broken_copy(world, tmp_path), ":3: Expected the label 1"),
        (world["root"], phrase),
    ]:
        args = verify_args({**world, "root": root, "store": store}, out)
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0
        assert (
            expected in result.output
            and str(store if expected == phrase else root) in result.output
        )
        assert not list(tmp_path.glob("r.*"))


def test_the_streamed_per_pair_file_is_byte_identical(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """verify --json writes the per-pair file while the scores are computed; its bytes are
    those of the file written at the end from the same arrays."""
    from facebench.report import scores_path_for, write_report

    out = tmp_path / "cli.json"
    result = CliRunner().invoke(cli, verify_args(world, out))
    assert result.exit_code == 0, result.output
    whole = load_ijb(world["root"], world["variant"], detector_scores=False)
    report, data = evaluate_templates(whole, world["store"], SplitOptions(pooling="media"))
    at_end = tmp_path / "at_end.json"
    write_report(report, at_end, data)
    assert scores_path_for(out).read_bytes() == scores_path_for(at_end).read_bytes()
    with np.load(scores_path_for(out)) as loaded:
        assert list(loaded.keys())[:5] == ["split", "left", "right", "is_same", "score"]


def test_a_failed_per_pair_write_leaves_nothing(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while the per-pair file is written: one error naming the file and
    errno, exit 2, no report, no per-pair file, no temporary file."""
    fill_disk_at(monkeypatch, "score")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, verify_args(world, out))
    assert result.exit_code == 2, result.output
    assert "r.scores.npz" in result.output and "No space left on device" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_early_per_pair_write_leaves_nothing(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the first columns are written, in a thread, as the scores are
    counted: the same one error, exit 2, nothing left."""
    names = fill_disk_at(monkeypatch, "right")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, verify_args(world, out))
    assert result.exit_code == 2, result.output
    assert names == [f"{n} facebench-report" for n in ("split", "left", "right")]  # a thread
    assert "r.scores.npz" in result.output and "No space left on device" in result.output
    assert list(tmp_path.iterdir()) == []
