print("check: todo")
