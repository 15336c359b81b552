import sys

from fakescope.serve.app import main

sys.exit(main())
