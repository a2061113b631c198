"""The ground floor: Kubernetes vocabulary that render, applyers, pipeline and config all
speak (object references, our labels and annotations, the field manager, the kinds
tables, name rules). It imports nothing of the project, so every floor above can import it.
"""
