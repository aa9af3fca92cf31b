"""Refresh the README's generated tables from the JSON the code wrote (`make readme`)."""

from readme_tables import update_readme

if __name__ == "__main__":
    print("README.md updated" if update_readme() else "README.md already up to date")
