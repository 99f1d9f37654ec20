"""The recorders' L2 book: :class:`lab.l2.Book`, the library's one L2 book.

The recorders keep one per instrument; the venue rules around it (snapshot and
diff sequencing, checksums, validation of every level before it is applied,
crossed-book resyncs) stay in ``recorders/venues``.

>>> b = Book()
>>> b.set("bid", 100.0, 2.0); b.set("ask", 102.0, 3.0)
>>> b.top()
(100.0, 2.0, 102.0, 3.0)
"""

from __future__ import annotations

from lab.l2 import Book

__all__ = ["Book"]
