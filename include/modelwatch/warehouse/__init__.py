"""The warehouse: tables analysts query, and the code that migrates and fills them.

- `engine`: where the warehouse is, connecting to it, migrating it;
- `schema`: the tables as SQLAlchemy Core objects;
- `load`: writing a run's results (`load_run`) and reading back history.

See docs/warehouse.md for every table, column and view.
"""
