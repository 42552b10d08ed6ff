"""The example pipeline: query → prepare → train → evaluate on scikit-learn's breast-cancer data."""
