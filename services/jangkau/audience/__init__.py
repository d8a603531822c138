"""The audience service: audiences as rules over population cells and hashed
contact lists, their size and reach per platform, overlaps, and platform exports."""
