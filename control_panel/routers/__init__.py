"""The panel's HTTP routes, one ``APIRouter`` per concern; ``control_panel.app`` assembles them."""
