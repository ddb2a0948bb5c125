"""A minimal Django project that talks to PostgreSQL through pgbouncer-rs."""
