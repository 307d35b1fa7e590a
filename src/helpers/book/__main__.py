"""`python -m helpers.book`: execute the chapters and build the book (see `helpers.book.build`)."""

from .build import main

raise SystemExit(main())
