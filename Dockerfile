# The Airflow image every ModelWatch service runs: the official image at the
# apache-airflow pin of requirements.txt, our runtime pins (among them the Celery
# provider that the workers run) and the modelwatch package.
FROM apache/airflow:3.3.2-python3.11

# The official image installs Python packages as the airflow user, never as root.
USER airflow

COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# Naming the image's own Airflow version stops pip from up- or downgrading it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 include /opt/airflow/include
# Editable, so that `import modelwatch` reads /opt/airflow/include: the copy baked
# in here, or the folder docker-compose.yaml mounts over it.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
