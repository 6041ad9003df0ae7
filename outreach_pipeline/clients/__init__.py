"""HTTP clients for Outreach and Workbooks, usable against the real services or the local sandbox."""
