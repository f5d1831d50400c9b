"""Plain Python that every app shares, with no Django import (so pure modules such as catalog.inventory can use it)."""
