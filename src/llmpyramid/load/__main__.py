import sys

from llmpyramid.load.cli import main

sys.exit(main())
