import sys

from modelwatch.cli import main

sys.exit(main())
