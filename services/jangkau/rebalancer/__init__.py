"""The hourly rebalancer: pull reports, ingest, rebalance, push budgets, record."""
