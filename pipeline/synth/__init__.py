"""Synthetic datasets in the real SSv2 and EPIC-KITCHENS-100 on-disk layouts, for tests and the demo."""
