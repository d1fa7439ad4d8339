"""The dashboard: one web page (and its JSON API) that shows the loop turning."""
