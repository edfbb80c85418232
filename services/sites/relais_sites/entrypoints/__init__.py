"""Ways in: the HTTP API and the demo-data seeder."""
