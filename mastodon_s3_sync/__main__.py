import sys

from mastodon_s3_sync.cli.main import main

sys.exit(main())
