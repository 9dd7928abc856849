import sys

from mastodon_s3_sync.cli import main

sys.exit(main())
