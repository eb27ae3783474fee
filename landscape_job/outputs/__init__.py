"""What merge writes besides the figures: ParaView files and the self-contained HTML viewer."""
