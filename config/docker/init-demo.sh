#!/bin/sh
# Loads the RLS demo schema into the compose PostgreSQL on first start.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v app_password="$APP_PASSWORD" -f /tenantpool/schema.sql
