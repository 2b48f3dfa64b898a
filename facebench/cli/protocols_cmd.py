"""``facebench protocols``: the built-in benchmark protocols and the files each expects."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

import click
from rich.console import Console
from rich.table import Table

from protocols import PROTOCOLS, ijba, ijbc, lfw, ytf


@dataclass(frozen=True)
class Expects:
    """What a protocol reads.

    Attributes
    ----------
    source : str
        ``"shipped"`` (facebench carries the definition file; ``--pairs`` replaces it),
        ``"--protocol-dir"`` (the user's licensed copy), or the option that names the
        user's own definition file (``"--bin FILE"``, ``"--pairs FILE"``).
    files : tuple of str
        The files read: absolute paths of shipped files, paths under the user's folder.
    store_ids : str
        What the store's ids look like for this protocol.
    """

    source: str
    files: tuple[str, ...]
    store_ids: str


def _ijb(name: str) -> Expects:
    variant = ijbc.VARIANTS[name]
    first, second = variant.galleries
    return Expects(
        source="--protocol-dir",
        files=(
            f"meta/{variant.tid_mid}",
            f"meta/{variant.pairs}",
            f"meta/{variant.landmarks}  (--pooling insightface only)",
            f"meta/{variant.gallery(first)}, meta/{variant.gallery(second)},"
            f" meta/{variant.probes}  (1:N, optional: all three or none)",
        ),
        store_ids="loose_crop/<image name> (e.g. loose_crop/1.jpg)",
    )


#: protocol name -> what it expects; a test checks that every registered protocol has one.
EXPECTS: dict[str, Expects] = {
    "lfw": Expects(
        source="shipped",
        files=(str(lfw.DATA_DIR / "pairs.txt") + "  (MD5-checked; --pairs FILE replaces it)",),
        store_ids="Name/Name_NNNN.jpg under lfw/ (e.g. Aaron_Eckhart/Aaron_Eckhart_0001.jpg)",
    ),
    "ytf": Expects(
        source="shipped",
        files=(str(ytf.shipped_file()) + "  (--pairs FILE replaces it)",),
        store_ids="frames under each video's folder (e.g. Person/3/aligned_detect_3.123.jpg)",
    ),
    "ijba": Expects(
        source="--protocol-dir",
        files=(
            f"{ijba.VERIFY_DIR}/splitN/verify_metadata_N.csv",
            f"{ijba.VERIFY_DIR}/splitN/verify_comparisons_N.csv",
            f"{ijba.SEARCH_DIR}/splitN/search_gallery_N.csv, search_probe_N.csv  (1:N, optional)",
        ),
        store_ids="<FILE>#<SIGHTING_ID> (e.g. frame/28337_00300.png#8484)",
    ),
    "ijbb": _ijb("ijbb"),
    "ijbc": _ijb("ijbc"),
    "bin": Expects(
        source="--bin FILE",
        files=("<your FILE>.bin  (insightface: lfw, cfp_fp, cfp_ff, agedb_30, calfw, cplfw)",),
        store_ids="<file name>#<image index> (e.g. cfp_fp.bin#0), as `facebench extract "
        "FILE.bin` writes",
    ),
    "pairs": Expects(
        source="--pairs FILE",
        files=("<your pairs file>  (lines: id1 id2 label, optional fold; docs/conventions.md)",),
        store_ids="the ids your pairs file lists",
    ),
}


@click.command("protocols")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def protocols_command(as_json: bool) -> None:
    """List the built-in benchmark protocols and the files each one reads.

    Shipped protocols (lfw, ytf) carry their official definition file; IJB protocols read
    your licensed copy of the release from --protocol-dir (paths relative to it; IJB-B/C
    files may also lie directly in it instead of meta/).

    \b
    Example:
      facebench protocols
      facebench protocols --json
    """
    rows = [
        {
            "name": name,
            "kind": spec.kind,
            "description": spec.description,
            **asdict(EXPECTS[name]),
        }
        for name, spec in PROTOCOLS.items()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="built-in protocols", title_justify="left", show_lines=True)
    table.add_column("name")
    table.add_column("kind")
    table.add_column("description", max_width=34)
    table.add_column("reads", min_width=58, overflow="fold")
    table.add_column("store ids", max_width=34)
    for row in rows:
        files = "\n".join(row["files"])
        table.add_row(
            row["name"],
            row["kind"],
            row["description"],
            f"{row['source']}:\n{files}",
            row["store_ids"],
        )
    Console(file=sys.stdout, width=150).print(table)
