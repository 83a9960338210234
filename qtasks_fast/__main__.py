import sys

from qtasks_fast.cli import main

sys.exit(main())
