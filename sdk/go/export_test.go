package gregormq

import "context"

// ClusterNodes is how many nodes METADATA names and which one is the controller ("" if none is
// known): the conformance driver's awaitCluster step, which the public API has no call for.
func ClusterNodes(ctx context.Context, cl *Client) (int, string, error) {
	resp, err := cl.call(ctx, OpMetadata, Msg{"topics": []Msg{}, "autoCreate": 0})
	if err != nil {
		return 0, "", err
	}
	return len(resp["nodes"].([]Msg)), resp["controller"].(string), nil
}
