"""Backtests: the real per-sensor engine and alert lifecycle on recorded or simulated data (``cityeye backtest``)."""
