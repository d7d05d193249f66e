"""`python -m mozart_server`: runs the server (same flags as `mozart serve`)."""

import sys

from mozart_server.cli import main

sys.exit(main())
