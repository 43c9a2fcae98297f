"""Sphinx configuration of the API reference (``make docs``; see index.rst)."""

project = "ocistore"
author = "the ocistore authors"
copyright = "the ocistore authors"

extensions = ["sphinx.ext.autodoc"]

# Pages are reStructuredText; the >>> examples in them run as doctests in the test
# suite (tests/test_docs.py), once per core.
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
default_role = "literal"  # `name` in a docstring reads as code, as in the README

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"undoc-members": False, "show-inheritance": False}

html_theme = "alabaster"
html_title = "ocistore API reference"
html_static_path: list[str] = []
