import sys

from relais_conformance.cli import main

sys.exit(main())
