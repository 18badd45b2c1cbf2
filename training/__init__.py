"""Train the lesson's Unet on scikit-learn's bundled 8x8 digits: `python -m training`.

`w3d4_digits.py` and `w3d4_pairing.py` are also shipped beside the student notebook, where they
import part 1's module by its plain name, and the lesson imports `w3d4_test` the same way.
Importing this package makes those plain names importable from the repository too (`w3d4_digits`,
`builtin_unet`, the modules in solutions/ and the tests in checks/), so both places use the same
files.
"""

import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
REPO = FOLDER.parent
for _folder in (FOLDER, REPO / "solutions", REPO / "checks"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))
