import sys

from pocketkube.cli import main

sys.exit(main())
