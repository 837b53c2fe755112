"""The application of the recipes' one-time migration (docs/recipes.md)."""
