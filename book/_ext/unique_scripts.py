"""A Sphinx extension of the report: each page lists a script once.

Sphinx 7.4 adds sphinx-thebe's inline script twice to every page, and the browser then reports
``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`` (fixed upstream in Sphinx 8, which
jupyter-book 1.x cannot use). ``tests/test_browser.py`` fails on any console error, so the duplicates are dropped.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), str(getattr(script, "attributes", {}).get("body", "")))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
