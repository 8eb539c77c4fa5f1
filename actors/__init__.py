"""The trio actors: one task each, owning its state, reached through a small typed facade."""
