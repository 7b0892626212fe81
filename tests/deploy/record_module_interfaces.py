"""Record the interface of each pinned registry module into registry-modules.json.

Run it after changing a registry module's version, with the new version's source (an env's
``terraform init`` downloads every module it calls into ``.terraform/modules``):

    python -m tests.deploy.record_module_interfaces \\
        terraform-aws-modules/eks/aws@21.19.0=envs/production/.terraform/modules/eks.eks ...

Each argument is ``SOURCE@VERSION=FOLDER`` (a submodule's source keeps its ``//path``, and
its folder is that submodule's). Entries for other versions are kept until removed by hand,
so that the tests name the call whose pin has no record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.deploy.terraform_config import INTERFACES, TerraformDir, interface_of_source


def main(arguments: list[str]) -> int:
    if not arguments:
        print(__doc__, file=sys.stderr)
        return 2
    recorded = json.loads(INTERFACES.read_text(encoding="utf-8")) if INTERFACES.exists() else {}
    for argument in arguments:
        key, _, folder = argument.partition("=")
        if "@" not in key or not folder or not Path(folder).is_dir():
            print(
                f"{argument!r} is not SOURCE@VERSION=FOLDER with an existing folder",
                file=sys.stderr,
            )
            return 2
        recorded[key] = interface_of_source(TerraformDir.read(Path(folder)))
    INTERFACES.write_text(
        json.dumps(dict(sorted(recorded.items())), indent=1) + "\n", encoding="utf-8"
    )
    print(f"{INTERFACES}: {len(recorded)} module versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
