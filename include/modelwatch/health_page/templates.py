"""The page's HTML, as Jinja2 templates kept in this module (no template files to ship beside the package).

Autoescaping is on for every template: model names, reasons and run ids from
the URL or the warehouse reach the page as text, never as markup. Only the
charts, built as escaped `markupsafe.Markup` by `charts`, are inserted as is.

The one script: the Airflow UI shows the page in an iframe sandboxed without
``allow-top-navigation``, where a plain link to a DAG run would open the whole
UI inside the frame. The script hands such links to the UI's own router
through the top window's history (same origin); anywhere else, or if that
fails, the link is followed as usual.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Model health{% endblock %} · ModelWatch</title>
<style>
  :root { color-scheme: light; }
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #f6f7f9; }
  header { background: #ffffff; border-bottom: 1px solid #d9d9d9; padding: 12px 24px; }
  header a { color: #1f5fa8; text-decoration: none; font-weight: 600; }
  main { padding: 16px 24px 48px; max-width: 1640px; }
  h1 { font-size: 1.5rem; margin: 8px 0 4px; }
  h2 { font-size: 1.2rem; margin: 28px 0 6px; }
  p.about, p.meta { color: #555; margin: 4px 0 12px; max-width: 70em; }
  .models { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
  .model-card, figure { background: #ffffff; border: 1px solid #d9d9d9; border-radius: 6px; }
  .model-card { padding: 12px 16px; align-self: start; }
  .model-card h2 { margin-top: 4px; }
  .figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
  figure { margin: 0; padding: 8px; }
  figcaption { font-size: 0.8rem; color: #555; padding: 4px 8px; }
  figcaption p { margin: 2px 0; }
  svg.chart { width: 100%; height: auto; display: block; }
  svg.decision-strip { max-width: 760px; }
  td.interval { white-space: nowrap; }
  table { border-collapse: collapse; background: #ffffff; font-size: 0.85rem; width: 100%; }
  th, td { border: 1px solid #d9d9d9; padding: 4px 8px; text-align: left; vertical-align: top; }
  th { background: #eef1f5; }
  dl.state { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
  dl.state dt { color: #555; }
  dl.state dd { margin: 0; }
  .empty { background: #fff8e1; border: 1px solid #e0c46c; border-radius: 6px; padding: 12px 16px; }
  .decision { font-weight: 600; }
  .decision-healthy { color: #2e8540; } .decision-alert { color: #a36400; } .decision-retrain { color: #1f5fa8; }
  .decision-rollback { color: #7b3fa0; } .decision-halt { color: #c4001a; }
</style>
</head>
<body>
<header><a href="{{ index_href }}">ModelWatch · Model health</a></header>
<main>
{% block content %}{% endblock %}
</main>
<script>
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[data-airflow-ui]");
  if (!link || window.top === window || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  try {
    window.top.history.pushState(null, "", link.getAttribute("href"));
    window.top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
    event.preventDefault();
  } catch (error) {
    // Not framed by the Airflow UI: the link opens here.
  }
});
</script>
</body>
</html>
"""

INDEX = """{% extends "base.html" %}
{% block content %}
<h1>Model health</h1>
<p class="about">Every monitored model's latest interval and decisions, from the ModelWatch warehouse.
Open a model for its quality, system KPIs, drift, label coverage and the DAG runs behind each decision.</p>
{% if not models %}
<p class="empty">You may not read the DAG of any configured model.</p>
{% endif %}
<div class="models">
{% for card in models %}
<section class="model-card" data-model="{{ card.name }}" aria-labelledby="model-{{ card.name }}">
  <h2 id="model-{{ card.name }}"><a href="{{ card.href }}">{{ card.name }}</a></h2>
  <p class="meta">{{ card.task }} · schedule {{ card.schedule }} · DAG
    <a href="{{ card.dag_href }}" data-airflow-ui>{{ card.dag_id }}</a></p>
  {% set overview = card.overview %}
  {% if overview is none %}
  <p class="empty no-runs">No runs yet: the warehouse holds no interval of {{ card.name }}.</p>
  {% else %}
  <dl class="state">
    <dt>latest interval</dt><dd>{{ overview.latest_interval }} ({{ overview.status }})</dd>
    <dt>latest decision</dt>
    <dd>
    {% if overview.latest_decision %}
      <span class="decision decision-{{ overview.latest_decision }}">{{ overview.latest_decision }}</span>:
      {{ overview.latest_decision_reason or "" }}
    {% else %}none yet{% endif %}
    </dd>
    <dt>champion version</dt><dd>{{ overview.champion_version or "unknown" }}</dd>
  </dl>
  <figure>{{ overview.decision_strip }}</figure>
  {% endif %}
</section>
{% endfor %}
</div>
{% endblock %}
"""

MODEL = """{% extends "base.html" %}
{% block title %}{{ model.name }}{% endblock %}
{% block content %}
{% macro show(figure) %}
<figure>{{ figure.svg }}
{% if figure.captions %}
<figcaption>{% for caption in figure.captions %}<p>{{ caption }}</p>{% endfor %}</figcaption>
{% endif %}
</figure>
{% endmacro %}
<h1 data-model="{{ model.name }}">{{ model.name }}</h1>
<p class="meta">{{ model.task }} · schedule {{ model.schedule }} · DAG
  <a href="{{ dag_href }}" data-airflow-ui>{{ dag_id }}</a>
  {% if health %}
  · {{ health.interval_count }} intervals, {{ health.first_label }} to {{ health.last_label }}
  {% endif %}</p>
{% if health is none %}
<p class="empty no-runs">No runs yet: the warehouse holds no interval of {{ model.name }}.
Its first run of the DAG {{ dag_id }} will fill this page.</p>
{% else %}
<section aria-labelledby="decisions">
  <h2 id="decisions">Decisions</h2>
  <p class="about">What each interval's run decided, why, and the champion version before and after it.</p>
  <figure>{{ health.decision_strip }}</figure>
  {% if health.decisions %}
  <table class="decisions">
    <thead><tr>
      <th>interval</th><th>decision</th><th>outcome</th><th>champion</th><th>reason</th><th>DAG run</th>
    </tr></thead>
    <tbody>
    {% for row in health.decisions %}
    <tr data-interval="{{ row.interval }}" data-decision="{{ row.decision }}">
      <td class="interval">{{ row.interval_label }}</td>
      <td class="decision decision-{{ row.decision }}">
        {{ row.decision }}{% if row.severity %} ({{ row.severity }}){% endif %}</td>
      <td>{{ row.outcome or "" }}</td>
      <td class="champion">
        {% if row.champion_before != row.champion_after %}{{ row.champion_before or "?" }} → {% endif %}
        {{ row.champion_after or "" }}</td>
      <td>{{ row.reason }}</td>
      <td><a class="run-link" href="{{ row.run_href }}" data-airflow-ui>{{ row.run_id }}</a></td>
    </tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="empty">No decision yet in these intervals.</p>
  {% endif %}
</section>
{% for section in health.sections %}
<section aria-labelledby="section-{{ loop.index }}">
  <h2 id="section-{{ loop.index }}">{{ section.heading }}</h2>
  <p class="about">{{ section.about }}</p>
  <div class="figures">
  {% for figure in section.figures %}{{ show(figure) }}{% endfor %}
  </div>
</section>
{% endfor %}
<section aria-labelledby="label-coverage">
  <h2 id="label-coverage">Label coverage</h2>
  <p class="about">Quality metrics stand on the labelled predictions only: a low coverage makes them noisy.</p>
  <div class="figures">{{ show(health.label_coverage) }}</div>
</section>
<section aria-labelledby="anomaly">
  <h2 id="anomaly">Anomaly detector</h2>
  {% if health.anomaly %}<div class="figures">{{ show(health.anomaly) }}</div>
  {% else %}<p class="about">Not judged yet: {{ health.anomaly_pending or "no check rows" }}</p>{% endif %}
</section>
<section aria-labelledby="breaches">
  <h2 id="breaches">Breached checks</h2>
  {% if health.breaches %}
  <table class="breaches">
    <thead><tr><th>interval</th><th>check</th><th>observed</th><th>limits</th><th>severity</th><th>reason</th></tr></thead>
    <tbody>
    {% for row in health.breaches %}
    <tr data-check="{{ row.check_name }}">
      <td class="interval">{{ row.interval_label }}</td><td>{{ row.check_name }}</td><td>{{ row.observed }}</td>
      <td>{{ row.limits }}</td><td>{{ row.severity or "" }}</td><td>{{ row.reason }}</td>
    </tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="about">No check breached in these intervals.</p>
  {% endif %}
</section>
{% endif %}
{% endblock %}
"""

MESSAGE = """{% extends "base.html" %}
{% block title %}{{ heading }}{% endblock %}
{% block content %}
<h1>{{ heading }}</h1>
<p class="empty">{{ message }}</p>
{% endblock %}
"""

ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#1f5fa8" stroke-width="2"
stroke-linecap="round" stroke-linejoin="round"><title>Model health</title><path d="M3 3v18h18"/>
<path d="M7 15l4-5 3 3 5-7"/><circle cx="19" cy="6" r="1.5" fill="#c4001a" stroke="#c4001a"/></svg>
"""
"""The navigation icon, served by the app so that the UI needs nothing from outside."""

environment = Environment(
    loader=DictLoader({"base.html": BASE, "index.html": INDEX, "model.html": MODEL, "message.html": MESSAGE}),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: object) -> str:
    """Render the template `name` (``index.html``, ``model.html`` or ``message.html``) with `context`."""
    return environment.get_template(name).render(**context)
