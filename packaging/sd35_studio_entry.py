"""What the bundled `sd35-studio` executable runs: the same entry point as the `sd35-studio` console script."""

from app.cli.main import main

raise SystemExit(main())
