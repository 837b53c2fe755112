"""Throwaway servers that the plugin starts once per run when no URL is configured."""
