"""Cases (工单): closed-loop disposal of alerts and reports across the city's levels (docs/cases.md)."""
