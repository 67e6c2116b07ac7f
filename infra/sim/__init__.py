"""The fleet simulator: each site's battery unit controllers served over Modbus TCP."""
