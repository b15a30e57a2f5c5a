"""``python -m engine.fake [--host H] [--port N]``: arguments go in, a running fake provider comes
out (it prints ``fake provider listening on http://H:N`` once ready)."""

import sys

from engine.fake.run import main

sys.exit(main())
