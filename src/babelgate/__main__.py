from babelgate.cli.main import main

raise SystemExit(main())
