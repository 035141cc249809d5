"""The base every layer imports: error kinds and exit codes, typed options, storage writes, the allocator, spreadsheet-safe text."""
