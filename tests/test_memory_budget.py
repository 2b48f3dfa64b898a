"""The memory budget of template verification changes how much is held at once, never a
number: with the budget shrunk until every store read and every block of score products
is tiny, the report and the per-pair file are the same, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ijbc_fixtures import write_ijbc

import facebench.evaluate_splits as evaluate_splits
import facebench.pool_store as pool_store
from facebench.cli import cli
from facebench.evaluate_splits import SplitOptions, evaluate_templates
from facebench.store import create_store, normalize_rows
from protocols.ijbc import load_ijbc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("budget") / "IJB-C"
    record = write_ijbc(
        root,
        n_subjects=10,
        templates_per_subject=3,
        images_per_template=4,
        seed=8,
        impostors_per_probe=8,
    )
    keys = sorted(record["scores"])
    rng = np.random.default_rng(3)
    unit, norms = normalize_rows(rng.standard_normal((len(keys), 16)))
    store = root.parent / "s.h5"
    create_store(store, keys, unit, norms, model="m")
    return {"root": root, "store": store}


def evaluate(world: dict[str, Any], memory_mib: int | None) -> tuple[dict[str, Any], dict]:
    protocol = load_ijbc(world["root"], detector_scores=False)
    report, data = evaluate_templates(
        protocol, world["store"], SplitOptions(pooling="media"), memory_mib=memory_mib
    )
    payload = report.to_dict()
    payload.pop("created")
    return payload, data


def test_a_tiny_budget_gives_the_same_report_bit_for_bit(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_store, "UNIT_ROWS", 4)  # many summation units, in both runs
    generous, generous_data = evaluate(world, 4096)
    reads: list[int] = []
    real_read = pool_store.FeatureStore.read_rows

    def counted(self: Any, rows: Any, flip: bool = False) -> Any:
        reads.append(len(rows))
        return real_read(self, rows, flip)

    monkeypatch.setattr(pool_store.FeatureStore, "read_rows", counted)
    products: list[int] = []
    real_matmul = np.matmul
    monkeypatch.setattr(
        evaluate_splits.np,
        "matmul",
        lambda a, b, **k: products.append(a.shape[0]) or real_matmul(a, b, **k),
    )
    monkeypatch.setattr(evaluate_splits, "_MIB", 64)  # 16 "MiB" = 1 KiB of working memory
    tiny, tiny_data = evaluate(world, 16)
    monkeypatch.undo()
    assert len(reads) > 10 and max(reads) == 4  # one unit per read
    assert len(products) > 4 and max(products) == 2  # two left templates per block
    assert tiny == generous
    assert tiny_data.keys() == generous_data.keys()
    for key in generous_data:
        nan_ok = tiny_data[key].dtype.kind == "f"  # a non-mated probe's mate score is NaN
        assert np.array_equal(tiny_data[key], generous_data[key], equal_nan=nan_ok), key


def test_the_cli_budget_option(world: dict[str, Any], tmp_path: Path) -> None:
    reports = []
    for extra in ([], ["--memory-budget", "16"]):
        out = tmp_path / f"r{len(reports)}.json"
        result = CliRunner().invoke(
            cli,
            [
                "verify",
                "--protocol",
                "ijbc",
                "--protocol-dir",
                str(world["root"]),
                "--features",
                str(world["store"]),
                "--json",
                str(out),
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        payload = json.loads(out.read_text(encoding="utf-8"))
        payload.pop("created")
        reports.append(payload)
    assert reports[0] == reports[1]
    result = CliRunner().invoke(
        cli,
        [
            "verify",
            "--protocol",
            "ijbc",
            "--protocol-dir",
            str(world["root"]),
            "--features",
            str(world["store"]),
            "--memory-budget",
            "8",
        ],
    )
    assert result.exit_code == 2 and "8 is not in the range x>=16" in result.output
