"""`recompute report`: the fleet's drift as one self-contained HTML page.

    data.gather(stores, rules, as_of) -> ReportData    the numbers (a plan-like pass, the event store's history)
    render.render_html(data) -> str                    the page: report.j2 with inline SVG charts (charts.py)
"""
