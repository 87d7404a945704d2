"""The model-health page: what each monitored model's warehouse rows say, as charts inside the Airflow UI.

The page is a FastAPI app (`app.create_app`) that the Airflow plugin
`plugins/modelwatch_health.py` mounts in the API server and links from the
UI's navigation. Its parts, each importable without Airflow:

- `queries`: the warehouse reads (views first, tables where no view covers it);
- `page`: what one model's page shows, from those reads;
- `charts`: server-side SVG charts (no JavaScript library, works offline);
- `templates`: the HTML, rendered by Jinja2 with autoescaping;
- `links`: the mount path and the Airflow UI's URLs of DAG runs;
- `access`: who may see what, which the plugin answers with Airflow's auth manager;
- `asgi`: the deferred app the plugin registers, so that loading the plugin imports nothing heavy.
"""
