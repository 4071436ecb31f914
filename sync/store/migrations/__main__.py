"""Developer helpers (certsync itself runs migrations from `certsync init`):

python -m sync.store.migrations revision "add a column"   autogenerate a new revision in versions/
python -m sync.store.migrations sql [postgresql|sqlite]    print the upgrade SQL (for a DBA to read)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from sync.store import migrations


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "revision":
        script_dir = Path(__file__).resolve().parent
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/scratch.db"
            engine = create_engine(url)
            migrations.upgrade(engine)
            engine.dispose()
            cfg = migrations.alembic_config(url=url)
            cfg.set_main_option("script_location", str(script_dir).replace("%", "%%"))
            number = int(migrations.head()) + 1
            command.revision(cfg, message=argv[1], autogenerate=True, rev_id=f"{number:04d}")
        return 0
    if len(argv) in (1, 2) and argv[0] == "sql":
        dialect = argv[1] if len(argv) == 2 else "postgresql"
        command.upgrade(migrations.alembic_config(url=f"{dialect}://"), "head", sql=True)
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
