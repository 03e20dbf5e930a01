from tcsnn.cli import main

raise SystemExit(main())
