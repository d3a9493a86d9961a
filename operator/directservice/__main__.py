"""`python -m directservice`: the same as the `directservice` command."""

import sys

from directservice.cli import main

sys.exit(main())
