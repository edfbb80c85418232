"""What the sites service talks to: its PostgreSQL schema."""
