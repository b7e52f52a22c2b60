-- The databases of the team deployment, one per server. infra/compose.yaml runs this file once,
-- on an empty volume, through the postgres image's /docker-entrypoint-initdb.d (as POSTGRES_USER);
-- tests/test_deployment.py runs it on its own cluster.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
