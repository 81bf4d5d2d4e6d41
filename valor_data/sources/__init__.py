"""One module per corpus, each turning its published files into clip-table rows."""
