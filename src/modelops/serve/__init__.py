"""The inference service: a verified bundle behind a schema-derived contract (see app.create_app)."""
