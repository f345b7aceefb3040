"""Pure domain of the DROPZONE_JSON_V1 connector: no Dagster, paramiko, boto3 or SQLAlchemy here."""
